"""xlayer.prediction"""
