"""xlayer.cost"""
