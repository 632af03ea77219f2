"""xlayer.workload"""
