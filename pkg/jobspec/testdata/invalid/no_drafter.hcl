job "no-drafter" {
  model "target" {
    path = "/models/target"
  }
  placement {
    devices = "0,1,1"
  }
  dataset "sharegpt" {
    dir   = ""
    files = []
  }
}
