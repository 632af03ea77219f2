"""xlayer.mapping"""
