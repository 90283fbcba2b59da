package hub

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// DefaultEndpoint is the Hub itself; HF_ENDPOINT replaces it with a mirror.
const DefaultEndpoint = "https://huggingface.co"

// Settings are where a Client talks to and writes to. SettingsFromEnv
// reads them the way huggingface_hub does, so both use one cache, one
// token and one mirror.
type Settings struct {
	Endpoint    string // no trailing slash
	CacheDir    string // the hub cache: the folder holding models--ORG--NAME
	Token       string // "" for anonymous
	TokenSource string // where Token came from, for messages: "HF_TOKEN" or a file path
	TokenPath   string // the token file huggingface_hub's login writes (named in messages even if absent)
	Offline     bool   // HF_HUB_OFFLINE: use the cache only
}

// SettingsFromEnv reads HF_ENDPOINT, HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME,
// HF_TOKEN (or the token file at HF_TOKEN_PATH or $HF_HOME/token) and
// HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE). getenv is os.Getenv outside
// tests.
func SettingsFromEnv(getenv func(string) string) (Settings, error) {
	var s Settings
	s.Endpoint = strings.TrimRight(getenv("HF_ENDPOINT"), "/")
	if s.Endpoint == "" {
		s.Endpoint = DefaultEndpoint
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Settings{}, fmt.Errorf("HF_ENDPOINT %q: want an http(s) URL such as https://mirror.example.com", s.Endpoint)
	}
	home := getenv("HF_HOME")
	if home == "" {
		cache := getenv("XDG_CACHE_HOME")
		if cache == "" {
			userHome, err := os.UserHomeDir()
			if err != nil {
				return Settings{}, fmt.Errorf("no HF_HOME, XDG_CACHE_HOME or home folder to put the model cache in: %w", err)
			}
			cache = filepath.Join(userHome, ".cache")
		}
		home = filepath.Join(cache, "huggingface")
	}
	home = expandHome(home)
	s.CacheDir = getenv("HF_HUB_CACHE")
	if s.CacheDir == "" {
		s.CacheDir = getenv("HUGGINGFACE_HUB_CACHE") // the older name, still honoured by huggingface_hub
	}
	if s.CacheDir == "" {
		s.CacheDir = filepath.Join(home, "hub")
	}
	s.CacheDir = expandHome(s.CacheDir)
	s.Offline = isTrue(getenv("HF_HUB_OFFLINE")) || isTrue(getenv("TRANSFORMERS_OFFLINE"))

	s.TokenPath = getenv("HF_TOKEN_PATH")
	if s.TokenPath == "" {
		s.TokenPath = filepath.Join(home, "token")
	}
	s.TokenPath = expandHome(s.TokenPath)
	for _, name := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if t := strings.TrimSpace(getenv(name)); t != "" {
			s.Token, s.TokenSource = t, name
			return s, nil
		}
	}
	b, err := os.ReadFile(s.TokenPath)
	switch {
	case err == nil:
		if t := strings.TrimSpace(string(b)); t != "" {
			s.Token, s.TokenSource = t, s.TokenPath
		}
	case !errors.Is(err, os.ErrNotExist):
		return Settings{}, fmt.Errorf("read the Hub token file: %w", err)
	}
	return s, nil
}

// isTrue is huggingface_hub's reading of a boolean environment variable.
func isTrue(v string) bool {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, p[1:])
		}
	}
	return p
}
