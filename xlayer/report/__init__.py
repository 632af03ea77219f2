"""xlayer.report"""
