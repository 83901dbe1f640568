package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// File names of a Hugging Face model folder.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// Folder is the weights of a model folder: one model.safetensors, or
// model.safetensors.index.json and its shards. Shards are opened on first use
// of one of their tensors. Its methods are safe for concurrent use.
type Folder struct {
	dir    string
	single *File // set for a one-file folder

	// For a sharded folder: which shard (a path relative to dir) holds each
	// tensor, and the shards opened so far.
	index     string
	weightMap map[string]string
	names     []string

	mu     sync.Mutex
	shards map[string]*openedShard
	closed bool
}

// openedShard caches the outcome of opening a shard, failures included, so a
// corrupt shard is reported every time without re-reading it.
type openedShard struct {
	file *File
	err  error
}

// OpenFolder opens the weights in dir. Like transformers it prefers
// model.safetensors when both layouts are present. A sharded folder's index is
// read and every shard it names must exist, but shards are only mapped and
// validated when a tensor in them is asked for.
func OpenFolder(dir string) (*Folder, error) {
	single := filepath.Join(dir, SingleFileName)
	if _, err := os.Stat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		return &Folder{dir: dir, single: f}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %w", err)
	}

	index := filepath.Join(dir, IndexFileName)
	data, err := os.ReadFile(index)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %s holds neither %s nor %s%s: %w", dir, SingleFileName, IndexFileName, whyNoWeights(dir), fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	weightMap, err := parseIndex(index, data)
	if err != nil {
		return nil, err
	}
	if err := checkShards(dir, index, weightMap); err != nil {
		return nil, err
	}
	s := &Folder{dir: dir, index: index, weightMap: weightMap, shards: map[string]*openedShard{}}
	s.names = make([]string, 0, len(weightMap))
	for name := range weightMap {
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	return s, nil
}

// parseIndex reads the weight_map of a model.safetensors.index.json. Other
// members (metadata.total_size and whatever tools add) are not needed to read
// tensors and are ignored.
func parseIndex(path string, data []byte) (map[string]string, error) {
	fail := func(tensor, reason string, err error) error {
		return &FormatError{File: path, Tensor: tensor, Reason: reason, Err: err}
	}
	var weightMap map[string]string
	err := walkObject(data, func(key string, value json.RawMessage) error {
		if key != "weight_map" {
			return nil
		}
		weightMap = map[string]string{}
		err := walkObject(value, func(tensor string, value json.RawMessage) error {
			var shard string
			if err := json.Unmarshal(value, &shard); err != nil {
				return fail(tensor, "weight_map value is not a shard file name", err)
			}
			if !filepath.IsLocal(filepath.FromSlash(shard)) {
				return fail(tensor, fmt.Sprintf("shard %q is not a path inside the folder", shard), nil)
			}
			weightMap[tensor] = filepath.FromSlash(shard)
			return nil
		})
		var fe *FormatError
		var dup *duplicateKeyError
		switch {
		case err == nil || errors.As(err, &fe):
			return err
		case errors.As(err, &dup):
			return fail(dup.key, "name appears more than once in weight_map", nil)
		}
		return fail("", "weight_map", err)
	})
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			return nil, err
		}
		return nil, fail("", "index", err)
	}
	if weightMap == nil {
		return nil, fail("", "index has no weight_map object", nil)
	}
	return weightMap, nil
}

// checkShards makes sure every shard the index names is a file in dir, so a
// missing download is reported at open time rather than mid-run.
func checkShards(dir, index string, weightMap map[string]string) error {
	tensorsOf := map[string][]string{}
	for tensor, shard := range weightMap {
		tensorsOf[shard] = append(tensorsOf[shard], tensor)
	}
	shards := make([]string, 0, len(tensorsOf))
	for shard := range tensorsOf {
		shards = append(shards, shard)
	}
	sort.Strings(shards)
	for _, shard := range shards {
		st, err := os.Stat(filepath.Join(dir, shard))
		if err == nil && st.Mode().IsRegular() {
			continue
		}
		tensors := tensorsOf[shard]
		sort.Strings(tensors)
		reason := fmt.Sprintf("shard %s (holding %d tensors) is missing", shard, len(tensors))
		if err == nil {
			reason = fmt.Sprintf("shard %s (holding %d tensors) is not a regular file", shard, len(tensors))
		}
		return &FormatError{File: index, Tensor: tensors[0], Reason: reason, Err: err}
	}
	return nil
}

// Dir returns the folder path.
func (s *Folder) Dir() string { return s.dir }

// Names returns the tensor names in sorted order.
func (s *Folder) Names() []string {
	if s.single != nil {
		return s.single.Names()
	}
	return append([]string(nil), s.names...)
}

// Info describes the named tensor; false when the folder does not hold it or
// its shard cannot be opened (Lookup says why).
func (s *Folder) Info(name string) (TensorInfo, bool) {
	t, err := s.Lookup(name)
	return t, err == nil
}

// Lookup describes the named tensor, opening its shard if needed. The error
// wraps ErrNotFound for an unknown name and is a *FormatError for a corrupt
// shard or a tensor the index places in a shard that lacks it.
func (s *Folder) Lookup(name string) (TensorInfo, error) {
	f, err := s.fileOf(name)
	if err != nil {
		return TensorInfo{}, err
	}
	t, ok := f.Info(name)
	if !ok {
		return TensorInfo{}, fmt.Errorf("safetensors: %s: tensor %q: %w", f.Path(), name, ErrNotFound)
	}
	return t, nil
}

// Raw returns the tensor's bytes without copying; see File.Raw.
func (s *Folder) Raw(name string) ([]byte, error) {
	f, err := s.fileOf(name)
	if err != nil {
		return nil, err
	}
	return f.Raw(name)
}

// Float32 returns a float32 copy of the tensor; see File.Float32.
func (s *Folder) Float32(name string) ([]float32, error) {
	f, err := s.fileOf(name)
	if err != nil {
		return nil, err
	}
	return f.Float32(name)
}

// fileOf returns the opened file holding name.
func (s *Folder) fileOf(name string) (*File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("safetensors: %s: %w", s.dir, ErrClosed)
	}
	if s.single != nil {
		return s.single, nil
	}
	shard, ok := s.weightMap[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: tensor %q: %w", s.index, name, ErrNotFound)
	}
	o, ok := s.shards[shard]
	if !ok {
		f, err := Open(filepath.Join(s.dir, shard))
		o = &openedShard{file: f, err: err}
		s.shards[shard] = o
	}
	if o.err != nil {
		return nil, fmt.Errorf("opening shard %s for tensor %q: %w", shard, name, o.err)
	}
	if _, ok := o.file.hdr.tensors[name]; !ok {
		return nil, &FormatError{File: o.file.Path(), Tensor: name,
			Reason: fmt.Sprintf("%s places the tensor in shard %s, which does not hold it", IndexFileName, shard)}
	}
	return o.file, nil
}

// Close closes every shard opened so far.
func (s *Folder) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.single != nil {
		return s.single.Close()
	}
	var errs []error
	for _, o := range s.shards {
		if o.file != nil {
			errs = append(errs, o.file.Close())
		}
	}
	s.shards = map[string]*openedShard{}
	return errors.Join(errs...)
}

// whyNoWeights says what a folder without safetensors weights holds
// instead, as far as it is a known case: a link whose target is gone (a
// Hugging Face cache snapshot whose blob is missing), or PyTorch weights.
func whyNoWeights(dir string) string {
	for _, name := range []string{SingleFileName, IndexFileName} {
		path := filepath.Join(dir, name)
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(path)
			return fmt.Sprintf(" (%s is a link to %s, which does not exist: a download that did not finish?)", name, target)
		}
	}
	for _, name := range []string{"pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "consolidated.00.pth"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Sprintf(" (it holds %s: only safetensors weights are read; convert them, e.g. save_pretrained(..., safe_serialization=True))", name)
		}
	}
	return ""
}
