num_prompts = 30
gamma       = "6"
