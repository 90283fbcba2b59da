// Package hub fetches models by repository id ("ORG/NAME[@REVISION]") from
// the Hugging Face Hub, or from a mirror that speaks the same HTTP protocol,
// into the cache layout of the Python library huggingface_hub:
//
//	$HF_HUB_CACHE (or $HF_HOME/hub, or ~/.cache/huggingface/hub)
//	└── models--ORG--NAME
//	    ├── blobs/ETAG                 the bytes, named by the server's ETag
//	    ├── refs/REVISION              the commit a branch or tag pointed at
//	    └── snapshots/COMMIT/FILE  ->  ../../blobs/ETAG
//
// so that whet reads what transformers already downloaded and transformers
// reads what whet downloaded. Only the files a run needs are fetched
// (Wanted): configs, tokenizer files, chat templates and safetensors
// weights, never pickled .bin or .pth files.
//
// A Client pulls; a Cache reads the folder without touching the network.
// Both are safe for concurrent use, also across processes: a blob is
// downloaded under a lock file in the same place huggingface_hub puts its
// own (.locks/models--ORG--NAME/ETAG.lock), so two pulls of one model
// download each file once.
package hub
