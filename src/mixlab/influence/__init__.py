"""mixlab.influence"""
