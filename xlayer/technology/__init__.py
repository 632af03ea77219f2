"""xlayer.technology"""
