variable "needed" {}

variable "count" {
  type    = number
  default = "many"
}

variable "count" {
  default = 1
}

job "variables" {
  model "target" {
    path = var.needed
  }
  dataset "synthetic" {}
  modes {
    speculative = false
  }
}
