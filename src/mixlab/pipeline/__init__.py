"""mixlab.pipeline"""
