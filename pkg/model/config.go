package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/draftbench/draftbench/pkg/backend"
)

// Config is the part of a Hugging Face config.json the engine uses.
type Config struct {
	Architectures         []string        `json:"architectures"`
	ModelType             string          `json:"model_type"`
	HiddenSize            int             `json:"hidden_size"`
	IntermediateSize      int             `json:"intermediate_size"`
	NumHiddenLayers       int             `json:"num_hidden_layers"`
	NumAttentionHeads     int             `json:"num_attention_heads"`
	NumKeyValueHeads      int             `json:"num_key_value_heads"`
	HeadDim               int             `json:"head_dim"`
	RMSNormEps            float64         `json:"rms_norm_eps"`
	VocabSize             int             `json:"vocab_size"`
	MaxPositionEmbeddings int             `json:"max_position_embeddings"`
	RopeTheta             float64         `json:"rope_theta"`
	RopeScaling           *RopeScaling    `json:"rope_scaling"`
	RopeParameters        *RopeScaling    `json:"rope_parameters"` // transformers v5 spelling
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         bool            `json:"attention_bias"`
	MLPBias               bool            `json:"mlp_bias"`
	HiddenAct             string          `json:"hidden_act"`
	SlidingWindow         *int            `json:"sliding_window"`
	UseSlidingWindow      *bool           `json:"use_sliding_window"`
	TorchDType            string          `json:"torch_dtype"`
	DType                 string          `json:"dtype"` // transformers v5 spelling
	BOSTokenID            json.RawMessage `json:"bos_token_id"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`

	// Filled in by ReadConfig.
	Arch string `json:"-"` // the architecture this engine runs it as
	Path string `json:"-"`
}

// RopeScaling is config.json's rope_scaling (or v5 rope_parameters).
type RopeScaling struct {
	RopeType                      string  `json:"rope_type"`
	Type                          string  `json:"type"` // older spelling of rope_type
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
	RopeTheta                     float64 `json:"rope_theta"`
}

// ReadConfig reads and checks dir/config.json.
func ReadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model folder %s: %w", dir, err)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %w", path, err)
	}
	c.Path = path
	if err := c.resolve(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) resolve() error {
	if len(c.Architectures) == 0 {
		return fmt.Errorf("no \"architectures\" entry; supported: %s", strings.Join(Architectures(), ", "))
	}
	arch := c.Architectures[0]
	if _, ok := registry[arch]; !ok {
		return fmt.Errorf("architecture %q is not supported; supported: %s", arch, strings.Join(Architectures(), ", "))
	}
	c.Arch = arch
	for _, f := range []struct {
		name string
		v    int
	}{
		{"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads},
		{"vocab_size", c.VocabSize},
	} {
		if f.v <= 0 {
			return fmt.Errorf("%s must be a positive integer, got %d", f.name, f.v)
		}
	}
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.NumKeyValueHeads < 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return fmt.Errorf("num_attention_heads %d is not a multiple of num_key_value_heads %d", c.NumAttentionHeads, c.NumKeyValueHeads)
	}
	if c.HeadDim == 0 {
		if c.HiddenSize%c.NumAttentionHeads != 0 {
			return fmt.Errorf("hidden_size %d is not a multiple of num_attention_heads %d and head_dim is not given", c.HiddenSize, c.NumAttentionHeads)
		}
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("head_dim %d must be even for rotary embeddings", c.HeadDim)
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.HiddenAct != "" && c.HiddenAct != "silu" {
		return fmt.Errorf("hidden_act %q is not supported (only silu)", c.HiddenAct)
	}
	if c.RopeParameters != nil {
		if c.RopeParameters.RopeTheta != 0 && c.RopeTheta == 0 {
			c.RopeTheta = c.RopeParameters.RopeTheta
		}
		if c.RopeScaling == nil {
			c.RopeScaling = c.RopeParameters
		}
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	// Values no trained model has: they give NaNs or garbage silently.
	switch {
	case c.RMSNormEps < 0 || math.IsNaN(c.RMSNormEps):
		return fmt.Errorf("rms_norm_eps must be positive, got %g", c.RMSNormEps)
	case c.RopeTheta < 0 || math.IsNaN(c.RopeTheta) || math.IsInf(c.RopeTheta, 0):
		return fmt.Errorf("rope_theta must be positive, got %g", c.RopeTheta)
	case c.MaxPositionEmbeddings < 0:
		return fmt.Errorf("max_position_embeddings must not be negative, got %d", c.MaxPositionEmbeddings)
	}
	if _, err := c.invFreq(); err != nil {
		return err
	}
	return nil
}

// Tied reports whether the LM head reuses the embedding matrix.
func (c *Config) Tied() bool { return c.TieWordEmbeddings != nil && *c.TieWordEmbeddings }

// DTypeName is the dtype config.json declares ("" when absent).
func (c *Config) DTypeName() string {
	if c.DType != "" {
		return c.DType
	}
	return c.TorchDType
}

// Window is the sliding attention window, 0 when none.
func (c *Config) Window() int {
	if c.SlidingWindow == nil || *c.SlidingWindow <= 0 {
		return 0
	}
	if c.UseSlidingWindow != nil && !*c.UseSlidingWindow {
		return 0 // Qwen2 declares a window but switches it off
	}
	return *c.SlidingWindow
}

// RoPE returns the rotary embedding of the model.
func (c *Config) RoPE() *backend.RoPE {
	inv, _ := c.invFreq()
	return &backend.RoPE{HeadDim: c.HeadDim, InvFreq: inv, Scale: 1}
}

// invFreq computes the rotary frequencies as transformers does: the default
// 1/θ^(2i/d) in float32, then the scaling of rope_type "linear" (positions
// divided by factor) or "llama3" (Meta's Llama 3.1 wavelength-dependent
// interpolation, modeling_rope_utils._compute_llama3_parameters).
func (c *Config) invFreq() ([]float32, error) {
	half := c.HeadDim / 2
	inv := make([]float64, half)
	for i := range inv {
		// torch computes base ** (arange(0, d, 2, int64).float() / d) in f32.
		exp := float32(float32(2*i) / float32(c.HeadDim))
		inv[i] = float64(float32(1.0 / float32(math.Pow(c.RopeTheta, float64(exp)))))
	}
	if c.RopeScaling != nil {
		kind := c.RopeScaling.RopeType
		if kind == "" {
			kind = c.RopeScaling.Type
		}
		switch kind {
		case "", "default":
		case "linear":
			if c.RopeScaling.Factor <= 0 {
				return nil, fmt.Errorf("rope_scaling linear needs a positive factor")
			}
			for i := range inv {
				inv[i] /= c.RopeScaling.Factor
			}
		case "llama3":
			s := c.RopeScaling
			if s.Factor <= 0 || s.LowFreqFactor <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.OriginalMaxPositionEmbeddings <= 0 {
				return nil, fmt.Errorf("rope_scaling llama3 needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings")
			}
			old := float64(s.OriginalMaxPositionEmbeddings)
			lowWave := old / s.LowFreqFactor
			highWave := old / s.HighFreqFactor
			for i, f := range inv {
				wave := 2 * math.Pi / f
				switch {
				case wave > lowWave:
					inv[i] = f / s.Factor
				case wave < highWave:
					// unchanged
				default:
					smooth := (old/wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
					inv[i] = (1-smooth)*f/s.Factor + smooth*f
				}
			}
		default:
			return nil, fmt.Errorf("rope_scaling type %q is not supported (default, linear, llama3)", kind)
		}
	}
	out := make([]float32, half)
	for i, f := range inv {
		out[i] = float32(f)
	}
	return out, nil
}

// Arch describes what distinguishes one architecture's decoder layer.
type Arch struct {
	QKVBias bool // q/k/v projections always carry a bias (Qwen2)
	QKNorm  bool // per-head RMSNorm of q and k before RoPE (Qwen3)
	Window  bool // honours sliding_window (Mistral)
}

var registry = map[string]Arch{}

// Register makes an architecture loadable under its config.json name.
func Register(name string, a Arch) { registry[name] = a }

// Architectures lists the supported config.json architecture names.
func Architectures() []string {
	out := make([]string, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
