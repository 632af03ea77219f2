"""xlayer.validation"""
