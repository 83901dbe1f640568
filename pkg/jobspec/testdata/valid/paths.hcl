variable "target" {
  default = "models/target"
}
variable "drafter" {
  default = "models/drafter"
}
variable "speculative" {
  default = true
}
variable "sharegpt" {
  default = "data/sharegpt"
}

job "paths" {
  model "target" {
    path = var.target
  }
  model "drafter" {
    path = var.drafter
  }
  dataset "sharegpt" {
    dir = var.sharegpt
  }
  modes {
    speculative = var.speculative
  }
}
