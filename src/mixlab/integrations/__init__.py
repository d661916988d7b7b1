"""mixlab.integrations"""
