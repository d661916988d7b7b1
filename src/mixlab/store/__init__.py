"""mixlab.store"""
