job "draft-top-k-zero" {
  model "target" {
    path = "/models/target"
  }
  model "drafter" {
    path = "/models/drafter"
  }
  dataset "synthetic" {}
  generation {
    temperature = 0.7
    draft_top_k = 0
  }
}
