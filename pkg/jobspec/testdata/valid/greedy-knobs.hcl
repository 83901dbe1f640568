job "greedy-knobs" {
  model "target" {
    path = "/models/target"
  }
  model "drafter" {
    path = "/models/drafter"
  }
  dataset "synthetic" {}
  generation {
    top_k       = 5
    top_p       = 0.9
    draft_top_k = 8
  }
}
