job "counts" {
  model "target" {
    path   = "/models/target"
    gpus   = 0
    stages = -1
  }
  model "drafter" {
    path = "/models/drafter"
    gpus = 2
  }
  dataset "synthetic" {
    input_tokens = 0
  }
  load {
    num_prompts     = 0
    max_concurrency = -1
    warmup_requests = -2
  }
  batch {
    size       = 0
    max_length = -1
  }
  generation {
    max_new_tokens = 0
    gamma          = 33
  }
  gpu_monitor {
    interval = "0s"
  }
}
