package hub

import (
	"net"
	"net/http"
	"os"
	"time"
)

// Client pulls models from the Hub (or the mirror in Settings.Endpoint)
// into the cache. The zero values of the tuning fields mean the defaults.
type Client struct {
	Settings
	// HTTP sends the requests; nil means one with connect and header
	// timeouts but none on the body, which may take hours.
	HTTP *http.Client
	// Workers is how many files download at once (default 4).
	Workers int
	// Retries is how often a rate-limited, failed or dropped request is
	// tried again (default 5), Backoff the first wait (default 1s), which
	// doubles up to MaxBackoff (default 8s).
	Retries    int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// IdleTimeout is how long a download may receive nothing before it
	// counts as a dropped connection and resumes (default 60s).
	IdleTimeout time.Duration
	// FreeSpace reports the bytes free for the cache folder; nil means the
	// file system's own count.
	FreeSpace func(dir string) (int64, error)
}

// The defaults, as huggingface_hub's: 5 retries, 1 s doubling to 8 s.
const (
	defaultWorkers    = 4
	defaultRetries    = 5
	defaultBackoff    = time.Second
	defaultMaxBackoff = 8 * time.Second
	defaultIdle       = time.Minute
)

// NewClient returns a client with the given settings and the defaults.
func NewClient(s Settings) *Client { return &Client{Settings: s} }

// FromEnv returns a client configured as huggingface_hub would be in this
// environment (see SettingsFromEnv).
func FromEnv() (*Client, error) {
	s, err := SettingsFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	return NewClient(s), nil
}

// Cache is the cache folder this client writes.
func (c *Client) Cache() Cache { return Cache{Dir: c.CacheDir} }

func (c *Client) workers() int { return orDefault(c.Workers, defaultWorkers) }
func (c *Client) retries() int { return orDefault(c.Retries, defaultRetries) }
func (c *Client) backoff() time.Duration {
	return orDefault(c.Backoff, defaultBackoff)
}
func (c *Client) idleTimeout() time.Duration { return orDefault(c.IdleTimeout, defaultIdle) }
func (c *Client) maxBackoff() time.Duration {
	return max(orDefault(c.MaxBackoff, defaultMaxBackoff), c.backoff())
}

func orDefault[T int | time.Duration](v, d T) T {
	if v > 0 {
		return v
	}
	return d
}

var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 20 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   20 * time.Second,
	ResponseHeaderTimeout: 60 * time.Second,
	MaxIdleConnsPerHost:   defaultWorkers * 2,
	IdleConnTimeout:       90 * time.Second,
	ForceAttemptHTTP2:     true,
}}

// follow is the HTTP client for requests whose redirects are followed:
// the model-info API and downloads. Go drops the Authorization header on
// a redirect to another host.
func (c *Client) follow() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

// noFollow is the same client stopping at the first redirect, for the
// HEAD of a resolve URL, whose redirect names the storage host.
func (c *Client) noFollow() *http.Client {
	hc := *c.follow()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}
