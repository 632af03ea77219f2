"""xlayer.explore"""
