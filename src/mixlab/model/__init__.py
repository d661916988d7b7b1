"""mixlab.model"""
