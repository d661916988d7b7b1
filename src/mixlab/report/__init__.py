"""mixlab.report"""
