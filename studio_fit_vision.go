package main

import (
	"fmt"
	"os"

	"whet/datasets"
	"whet/engine"
	"whet/engine/hub"
	"whet/engine/memplan"
	"whet/presets"
)

// studioVisionPlan plans a run of a vision model as whet train runs it,
// for the studio's fit page: Llama 3.2 Vision always (memplan.PlanMllama,
// one image per sequence, in its engine's precision and without
// checkpointing: memplan.ForVisionEngine), Gemma 3 with its tower when the
// run's data holds images (memplan.PlanGemma3Vision with as many images
// per sequence as the data's fullest row). ok is false for a text run (a
// text model, or Gemma 3 on data without images or whose images cannot be
// listed): the text plan applies. notes say what the plan assumed.
func studioVisionPlan(cfg engine.RunConfig, opts memplan.Options) (plan *memplan.MemPlan, notes []string, ok bool, err error) {
	name := cfg.Model
	var dir string
	switch st, statErr := os.Stat(name); {
	case statErr == nil && st.IsDir():
		dir = name
	case hub.LooksLikeRef(name):
		if dir, err = hubModelDir(name); err != nil {
			return nil, nil, false, nil // the text path names the problem
		}
	default:
		e, err := presets.Lookup(name)
		if err != nil || e.Arch.ModelType != "mllama" {
			// A catalog Gemma 3 is planned as text until its folder is
			// there: whet train reads the tower from the folder.
			return nil, nil, false, nil
		}
	}
	kind := engine.VisionMllama
	if dir != "" {
		kind = engine.VisionModelKind(dir)
	}
	switch kind {
	case engine.VisionMllama:
		src := name
		if dir != "" {
			src = dir
		}
		m, err := resolveFitModel(src)
		if err != nil {
			return nil, nil, false, err
		}
		o, notes := memplan.ForVisionEngine(kind, opts)
		plan, err := memplan.PlanMllama(m.mllama, o, memplan.MllamaOptions{Images: 1, Projector: cfg.LoRA.Projector})
		if err != nil {
			return nil, nil, false, err
		}
		notes = append(notes, fmt.Sprintf("Llama 3.2 Vision: planned for one image per sequence (%d tiles), the vision tower frozen; no advice or longest length for vision models yet", m.mllama.Vision.MaxTiles))
		return plan, notes, true, nil
	case engine.VisionGemma3:
		if cfg.Data.Path == "" {
			return nil, nil, false, nil
		}
		rows, _, err := datasets.ReadImageRows(cfg.Data.Path)
		if err != nil {
			return nil, nil, false, nil
		}
		most := 0
		for _, r := range rows {
			most = max(most, len(r.Images))
		}
		if most == 0 {
			return nil, nil, false, nil // trains as its text model
		}
		text, err := engine.LoadModelConfig(dir)
		if err != nil {
			return nil, nil, false, err
		}
		vis, err := gemma3VisionForFit(fitModel{label: dir, config: text})
		if err != nil {
			return nil, nil, false, err
		}
		o, notes := memplan.ForVisionEngine(kind, opts)
		plan, err := memplan.PlanGemma3Vision(text, vis, o,
			memplan.Gemma3VisionOptions{Images: most * max(o.MicroBatch, 1), Projector: cfg.LoRA.Projector, VisionLayers: cfg.LoRA.VisionLayers})
		if err != nil {
			return nil, nil, false, err
		}
		notes = append(notes, fmt.Sprintf("Gemma 3 vision: planned for %d image(s) per sequence (the data's fullest row), the vision tower frozen; no advice or longest length for vision models yet", most))
		return plan, notes, true, nil
	}
	return nil, nil, false, nil
}
