gamma = "six"
