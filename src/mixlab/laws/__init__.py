"""mixlab.laws"""
