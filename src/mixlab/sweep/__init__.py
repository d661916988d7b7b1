"""mixlab.sweep"""
