locals {
  a = local.b
  b = local.a
}

job "references" {
  model "target" {
    path = var.missing
  }
  model "drafter" {
    path = env("DRAFTER")
  }
  dataset "synthetic" {
    input_tokens = nosuchfunc(3)
  }
  load {
    num_prompts = local.a
  }
}
