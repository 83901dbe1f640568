job "sampling" {
  model "target" {
    path = "/models/target"
  }
  model "drafter" {
    path = "/models/drafter"
  }
  dataset "synthetic" {}
  batch {
    max_length = 128
  }
  generation {
    max_new_tokens = 128
    temperature    = -0.5
    top_k          = -1
    top_p          = 1.5
    draft_top_k    = -2
  }
}
