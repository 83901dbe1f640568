package model

// Qwen3ForCausalLM: Llama's layer with an RMSNorm over each head of q and k
// (q_norm, k_norm, weight of head_dim) before RoPE, and explicit head_dim.
func init() { Register("Qwen3ForCausalLM", Arch{QKNorm: true}) }
