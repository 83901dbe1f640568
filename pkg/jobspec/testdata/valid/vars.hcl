variable "num_prompts" {
  description = "Prompts to send."
  default     = 10
}

variable "gamma" {
  type    = number
  default = 4
}

variable "speculative" {
  default = true
}

variable "prompts" {
  type    = list(string)
  default = ["hello"]
}

variable "model_dir" {
  description = "No default: it must be given."
}

locals {
  # Locals may refer to each other in any order.
  drafter = "${local.base}/drafter"
  base    = lower(var.model_dir)
}

job "vars" {
  model "target" {
    path = "${local.base}/target"
  }
  model "drafter" {
    path = local.drafter
  }
  placement {
    strategy = "same"
    devices  = env("CUDA_VISIBLE_DEVICES", "0")
  }
  dataset "prompts" {
    prompts = var.prompts
  }
  load {
    num_prompts = var.num_prompts
  }
  generation {
    gamma = var.gamma
  }
  modes {
    speculative = var.speculative
  }
}
