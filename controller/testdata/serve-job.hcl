# The job the serve tests submit: tiny models the test writes, on the one
# CPU device of the test's worker. Every input comes in as a -var.
variable "target" {}
variable "drafter" {}
variable "out" {}
variable "prompts" {
  default = 4
}

job "serve-test" {
  output_dir = var.out
  seed       = 11

  model "target" {
    path = var.target
  }
  model "drafter" {
    path = var.drafter
  }

  placement {
    strategy = "same"
    devices  = "0"
  }

  dataset "prompts" {
    prompts = [
      "Why is the sky blue?",
      "Write a haiku about a lighthouse.",
      "Three uses for a paperclip.",
      "Weather or climate?",
    ]
  }

  load {
    num_prompts     = var.prompts
    max_concurrency = 1
    warmup_requests = 0
  }

  generation {
    max_new_tokens = 8
    gamma          = 2
    temperature    = 0
  }

  modes {
    speculative = true
    target_ar   = true
  }

  gpu_monitor {
    enabled  = var.gpu_monitor
    interval = "50ms"
  }
}

# Last, so the lines the tests expect in errors stay where they are.
variable "gpu_monitor" {
  default = false
}
