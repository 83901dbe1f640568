# The multi-host tests' job: the target split into two pipeline stages, one
# per host (hidden states cross hosts on every step), the drafter beside the
# target's first stage. The tests set the variables.

variable "models" {}
variable "out" {}
variable "prompts" { default = 6 }
variable "tokens" { default = 16 }
variable "devices" { default = "host-a:0,host-b:0,host-a:1" }

job "two-hosts" {
  seed       = 7
  output_dir = var.out

  model "target" {
    path   = "${var.models}/target"
    gpus   = 2
    stages = 2
  }
  model "drafter" {
    path = "${var.models}/drafter"
    gpus = 1
  }

  placement {
    strategy = "multi_gpu_ratio"
    devices  = var.devices
  }

  dataset "prompts" {
    prompts = [
      "The sea at night is",
      "Once upon a time, a lighthouse keeper",
      "Explain why the moon has phases.",
      "Write a short poem about rain on a tin roof.",
      "List three colours of autumn leaves.",
      "Why is the sky blue?",
    ]
  }

  load {
    num_prompts     = var.prompts
    max_concurrency = 2
  }

  batch {
    enabled = true
    size    = 2
  }

  generation {
    max_new_tokens = var.tokens
    gamma          = 3
    temperature    = 0
  }
}
