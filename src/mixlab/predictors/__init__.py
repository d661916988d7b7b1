"""mixlab.predictors"""
