"""xlayer.predict"""
