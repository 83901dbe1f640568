# A variable but no job.
variable "n" {
  default = 1
}
