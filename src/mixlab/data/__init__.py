"""mixlab.data"""
