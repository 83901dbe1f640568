num_prompts = 30
gama        = 6
