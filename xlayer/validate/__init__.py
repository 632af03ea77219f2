"""xlayer.validate"""
