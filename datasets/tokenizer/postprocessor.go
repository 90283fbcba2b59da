package tokenizer

import (
	"encoding/json"
	"fmt"
)

// template is the single-sequence part of a post-processor: the special
// ids to put before and after the encoded text when special tokens are
// asked for. Pair templates are not needed for causal LM fine-tuning.
type template struct {
	before, after []int
}

func parsePostProcessor(raw json.RawMessage, path string, tokenID func(string) (int, bool)) (template, error) {
	obj, typ, err := component(raw, path)
	if err != nil || obj == nil {
		return template{}, err
	}
	switch typ {
	case "ByteLevel":
		// Only trims offsets, which we do not produce.
		return template{}, nil
	case "Sequence":
		var items []json.RawMessage
		if err := field(obj, "processors", &items, path); err != nil {
			return template{}, err
		}
		var t template
		for i, it := range items {
			s, err := parsePostProcessor(it, fmt.Sprintf("%s.processors[%d]", path, i), tokenID)
			if err != nil {
				return template{}, err
			}
			t.before = append(s.before, t.before...)
			t.after = append(t.after, s.after...)
		}
		return t, nil
	case "TemplateProcessing":
		var single []struct {
			SpecialToken *struct{ ID string }
			Sequence     *struct{ ID string }
		}
		if err := field(obj, "single", &single, path); err != nil {
			return template{}, err
		}
		var specials map[string]struct {
			IDs []int
		}
		if err := optField(obj, "special_tokens", &specials, path); err != nil {
			return template{}, err
		}
		var t template
		seen := false
		for i, piece := range single {
			switch {
			case piece.Sequence != nil:
				if seen {
					return template{}, fmt.Errorf("%s.single[%d]: more than one sequence", path, i)
				}
				seen = true
			case piece.SpecialToken != nil:
				sp, ok := specials[piece.SpecialToken.ID]
				if !ok {
					id, found := tokenID(piece.SpecialToken.ID)
					if !found {
						return template{}, fmt.Errorf("%s.single[%d]: special token %q is neither in special_tokens nor in the vocabulary", path, i, piece.SpecialToken.ID)
					}
					sp.IDs = []int{id}
				}
				if seen {
					t.after = append(t.after, sp.IDs...)
				} else {
					t.before = append(t.before, sp.IDs...)
				}
			default:
				return template{}, fmt.Errorf("%s.single[%d]: want SpecialToken or Sequence", path, i)
			}
		}
		return t, nil
	case "BertProcessing", "RobertaProcessing":
		var cls, sep [2]json.RawMessage
		if err := field(obj, "cls", &cls, path); err != nil {
			return template{}, err
		}
		if err := field(obj, "sep", &sep, path); err != nil {
			return template{}, err
		}
		var clsID, sepID int
		if err := json.Unmarshal(cls[1], &clsID); err != nil {
			return template{}, fmt.Errorf("%s.cls[1]: %v", path, err)
		}
		if err := json.Unmarshal(sep[1], &sepID); err != nil {
			return template{}, fmt.Errorf("%s.sep[1]: %v", path, err)
		}
		return template{before: []int{clsID}, after: []int{sepID}}, nil
	}
	return template{}, fmt.Errorf("%s.type: post-processor %q is not supported", path, typ)
}
