job "everything" {
  output_dir = "results/everything"
  seed       = 7

  model "target" {
    path   = "/models/target"
    gpus   = 3
    dtype  = "bf16"
    stages = 3
  }
  model "drafter" {
    path  = "/models/drafter"
    gpus  = 1
    dtype = "f32"
  }

  placement {
    strategy = "multi_gpu_ratio"
    devices  = [0, 1, 2, 3]
  }

  dataset "sharegpt" {
    dir   = "/data/sharegpt"
    files = ["sharegpt_gpt4.jsonl"]
  }

  load {
    rate            = 2.5
    duration        = "5m"
    arrival         = "gamma"
    burstiness      = 0.5
    max_concurrency = 8
    warmup_requests = 3
  }

  batch {
    enabled    = false
    size       = 16
    max_length = 2048
  }

  generation {
    max_new_tokens = 256
    gamma          = 8
    temperature    = 0.7
    top_k          = 50
    top_p          = 0.9
    ignore_eos     = false
    draft_top_k    = 256
  }

  modes {
    speculative = true
    target_ar   = false
  }

  gpu_monitor {
    enabled  = false
    interval = 0.25
  }
}
