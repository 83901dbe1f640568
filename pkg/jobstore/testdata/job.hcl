# A job as the jobstore tests submit it: the runner is a fake, so the model
# folders only need a config.json (the controller's path check).
variable "num_prompts" {
  default = 3
}

job "fixture" {
  seed = 7

  model "target" {
    path = "testdata/models/target"
  }
  model "drafter" {
    path = "testdata/models/drafter"
  }

  placement {
    strategy = "same"
  }

  dataset "prompts" {
    prompts = ["one", "two", "three"]
  }

  load {
    num_prompts     = var.num_prompts
    warmup_requests = 1
  }

  generation {
    max_new_tokens = 4
    gamma          = 2
    temperature    = 0
  }

  modes {
    speculative = true
    target_ar   = true
  }
}
