"""mixlab.train"""
