"""xlayer.cli"""
