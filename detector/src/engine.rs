//! Routing events to shards and running the detectors of each shard.
//!
//! The [`Router`] sees every event in stream order: it computes the client
//! key, classifies the request once (or takes the class computed on a
//! parse thread), keeps the site-wide population figures
//! and decides which shard owns the event (and, for login traffic, which
//! shard owns its target). A [`Shard`] holds the detectors' state for the
//! keys it owns. The binary runs shards on worker threads; [`Engine`] runs
//! them inline, for tests, one-core replay and benchmarks. Both give the
//! same findings.

use crate::classify::{Classifier, RequestClass};
use crate::config::{ClientKeyMode, ConfigError, DetectionConfig};
use crate::detector::{Detector, Observation, Role};
use crate::detectors;
use crate::event::{mix64, ClientKey, Event};
use crate::finding::Finding;
use crate::population::{PopulationTracker, PopulationView};
use crate::state::{EngineState, RouterState, ShardState, StateError};
use crate::time::EventTime;

/// What the router decided for one event; travels with the event to shards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Routed {
    /// The client key.
    pub key: ClientKey,
    /// The event's effective time: its own, or the router's watermark when
    /// it arrived later than the allowed lateness (so a very late event
    /// cannot see state that the watermark already expired).
    pub time: EventTime,
    /// The request class.
    pub class: RequestClass,
    /// The shard that owns the client.
    pub client_shard: usize,
    /// The shard that owns the event's target, when detectors of distributed
    /// attacks need to see it (login traffic); `None` otherwise.
    pub target_shard: Option<usize>,
}

/// The sequential first stage of detection. See the module docs.
pub struct Router {
    classifier: Classifier,
    population: PopulationTracker,
    key_mode: ClientKeyMode,
    ipv6_prefix: u8,
    shards: usize,
    lateness_ms: i64,
    newest: EventTime,
}

impl Router {
    /// Builds a router for `shards` shards.
    pub fn new(cfg: &DetectionConfig, shards: usize) -> Result<Router, ConfigError> {
        cfg.validate()?;
        Ok(Router {
            classifier: Classifier::new(cfg)?,
            population: PopulationTracker::new(cfg),
            key_mode: cfg.client_key,
            ipv6_prefix: cfg.ipv6_prefix,
            shards: shards.max(1),
            lateness_ms: i64::try_from(cfg.allowed_lateness_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            newest: EventTime::MIN,
        })
    }

    /// Routes one event. Call [`Router::take_population_update`] after each
    /// call and broadcast what it returns to every shard before the event.
    pub fn route(&mut self, ev: &Event<'_>) -> Routed {
        let class = self.classifier.classify(ev);
        self.route_classified(ev, class)
    }

    /// [`Router::route`] for an event already classified (by
    /// [`Classifier::classify`] with the same configuration), so that the
    /// costliest per-event step can run on other threads, in parallel,
    /// while routing stays sequential.
    pub fn route_classified(&mut self, ev: &Event<'_>, class: RequestClass) -> Routed {
        let key = match (self.key_mode, ev.identity.as_deref()) {
            (ClientKeyMode::Identity, Some(id)) if !id.is_empty() => ClientKey::for_identity(id),
            _ => ClientKey::for_ip(ev.ip, self.ipv6_prefix),
        };
        let time = ev.ts.max(self.watermark());
        if ev.ts > self.newest {
            self.newest = ev.ts;
        }
        self.population.observe(time, key, class);
        let client_shard = self.shard_of(key.stable_hash());
        let target_shard = class
            .contains(RequestClass::LOGIN)
            .then(|| self.shard_of(detectors::target_hash(ev)));
        Routed {
            key,
            time,
            class,
            client_shard,
            target_shard,
        }
    }

    /// The new population view, when it changed since the last call.
    pub fn take_population_update(&mut self) -> Option<PopulationView> {
        self.population.take_update()
    }

    /// Event time up to which every event is assumed to have arrived.
    pub fn watermark(&self) -> EventTime {
        if self.newest == EventTime::MIN {
            EventTime::MIN
        } else {
            self.newest.plus_millis(-self.lateness_ms)
        }
    }

    /// How many shards events are spread over.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// What the router has learned, for a restart.
    pub fn save(&self) -> RouterState {
        RouterState {
            population: self.population.save(),
            newest: self.newest,
        }
    }

    /// Takes back what [`Router::save`] gave.
    pub fn restore(&mut self, state: RouterState) {
        self.population.restore(state.population);
        self.newest = state.newest;
    }

    fn shard_of(&self, hash: u64) -> usize {
        // Multiply-shift instead of `%`: uniform and cheaper.
        ((u128::from(mix64(hash)) * self.shards as u128) >> 64) as usize
    }
}

/// The detectors' state for the keys one shard owns.
pub struct Shard {
    detectors: Vec<Box<dyn Detector>>,
    population: PopulationView,
}

impl Shard {
    /// Builds every enabled detector, each sized for `1/shards` of the
    /// configured client cap.
    pub fn new(cfg: &DetectionConfig, shards: usize) -> Result<Shard, ConfigError> {
        Ok(Shard {
            detectors: detectors::build_all(cfg, shards.max(1))?,
            population: PopulationView::default(),
        })
    }

    /// Applies a population view broadcast by the router.
    pub fn set_population(&mut self, view: PopulationView) {
        self.population = view;
    }

    /// Runs every detector on one event this shard received in `role`.
    pub fn observe(&mut self, ev: &Event<'_>, routed: &Routed, role: Role, out: &mut Vec<Finding>) {
        let obs = Observation {
            event: ev,
            key: routed.key,
            now: routed.time,
            class: routed.class,
            population: &self.population,
            role,
        };
        for d in &mut self.detectors {
            d.observe(&obs, out);
        }
    }

    /// Lets every detector drop state idle at `watermark`.
    pub fn advance(&mut self, watermark: EventTime, out: &mut Vec<Finding>) {
        for d in &mut self.detectors {
            d.advance(watermark, out);
        }
    }

    /// Every detector's state, for a restart.
    pub fn save(&self) -> Result<ShardState, StateError> {
        Ok(ShardState {
            population: self.population,
            detectors: self
                .detectors
                .iter()
                .map(|d| Ok((d.name().to_owned(), d.save_state()?)))
                .collect::<Result<_, StateError>>()?,
        })
    }

    /// A shard as [`Shard::new`] builds it, with what [`Shard::save`] gave
    /// (under the same configuration, so the same detectors) taken back.
    pub fn restored(
        cfg: &DetectionConfig,
        shards: usize,
        state: ShardState,
    ) -> Result<Shard, StateError> {
        let mut shard = Shard::new(cfg, shards)
            .map_err(|e| StateError::Mismatch(format!("under a refused configuration: {e}")))?;
        shard.population = state.population;
        for d in &mut shard.detectors {
            let saved = state.detectors.iter().find(|(name, _)| name == d.name());
            let (_, bytes) = saved.ok_or_else(|| {
                StateError::Mismatch(format!("without the {} detector", d.name()))
            })?;
            d.restore_state(bytes)?;
        }
        Ok(shard)
    }

    /// Per-detector tracked keys and state bytes.
    pub fn stats(&self) -> Vec<DetectorStats> {
        self.detectors
            .iter()
            .map(|d| DetectorStats {
                detector: d.name(),
                tracked: d.tracked(),
                state_bytes: d.state_bytes(),
            })
            .collect()
    }
}

/// Size of one detector's state in one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectorStats {
    /// Detector name.
    pub detector: &'static str,
    /// Keys tracked.
    pub tracked: usize,
    /// Approximate bytes held.
    pub state_bytes: usize,
}

/// Router and shards run inline on the caller's thread.
pub struct Engine {
    router: Router,
    shards: Vec<Shard>,
}

impl Engine {
    /// Builds an engine with `shards` shards (use 1 unless testing that the
    /// result does not depend on the shard count).
    pub fn new(cfg: &DetectionConfig, shards: usize) -> Result<Engine, ConfigError> {
        let shards = shards.max(1);
        Ok(Engine {
            router: Router::new(cfg, shards)?,
            shards: (0..shards)
                .map(|_| Shard::new(cfg, shards))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Detects on one event.
    pub fn observe(&mut self, ev: &Event<'_>, out: &mut Vec<Finding>) {
        let class = self.router.classifier.classify(ev);
        self.observe_classified(ev, class, out);
    }

    /// [`Engine::observe`] for an event already classified (see
    /// [`Router::route_classified`]).
    pub fn observe_classified(
        &mut self,
        ev: &Event<'_>,
        class: RequestClass,
        out: &mut Vec<Finding>,
    ) {
        let routed = self.router.route_classified(ev, class);
        if let Some(view) = self.router.take_population_update() {
            for s in &mut self.shards {
                s.set_population(view);
            }
        }
        self.shards[routed.client_shard].observe(ev, &routed, Role::Client, out);
        if let Some(t) = routed.target_shard {
            self.shards[t].observe(ev, &routed, Role::Target, out);
        }
    }

    /// Advances every shard to the router's watermark.
    pub fn advance(&mut self, out: &mut Vec<Finding>) {
        let wm = self.router.watermark();
        if wm == EventTime::MIN {
            return;
        }
        for s in &mut self.shards {
            s.advance(wm, out);
        }
    }

    /// Per-shard, per-detector state sizes.
    pub fn stats(&self) -> Vec<Vec<DetectorStats>> {
        self.shards.iter().map(Shard::stats).collect()
    }

    /// Everything detection has learned (see [`crate::state`]).
    pub fn save(&self) -> Result<EngineState, StateError> {
        EngineState::gather(&self.router, &self.shards)
    }

    /// Takes back what [`Engine::save`] gave, from an engine with the same
    /// configuration and shard count (as [`EngineState::decode`] checks),
    /// or leaves this engine as it was and says why not.
    pub fn restore(&mut self, cfg: &DetectionConfig, state: EngineState) -> Result<(), StateError> {
        let (router, shards) = state.into_parts(cfg, self.shards.len())?;
        *self = Engine::from_parts(cfg, router, shards)
            .map_err(|e| StateError::Mismatch(format!("under a refused configuration: {e}")))?;
        Ok(())
    }

    /// An engine from a restored state's parts ([`EngineState::into_parts`]).
    pub fn from_parts(
        cfg: &DetectionConfig,
        router: RouterState,
        shards: Vec<Shard>,
    ) -> Result<Engine, ConfigError> {
        let mut engine = Engine {
            router: Router::new(cfg, shards.len())?,
            shards,
        };
        engine.router.restore(router);
        Ok(engine)
    }
}

impl EngineState {
    /// The state of a router and its shards, wherever they run.
    pub fn gather(router: &Router, shards: &[Shard]) -> Result<EngineState, StateError> {
        Ok(EngineState {
            router: router.save(),
            shards: shards.iter().map(Shard::save).collect::<Result<_, _>>()?,
        })
    }

    /// The router's part, and `shards` shards rebuilt from theirs under
    /// `cfg` (for callers that run shards on their own threads).
    pub fn into_parts(
        self,
        cfg: &DetectionConfig,
        shards: usize,
    ) -> Result<(RouterState, Vec<Shard>), StateError> {
        if self.shards.len() != shards {
            return Err(crate::state::shard_mismatch(self.shards.len(), shards));
        }
        let built = self
            .shards
            .into_iter()
            .map(|saved| Shard::restored(cfg, shards, saved))
            .collect::<Result<_, _>>()?;
        Ok((self.router, built))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn ev(secs: i64, ip: &str) -> Event<'static> {
        let mut e = Event::new(EventTime::from_secs(secs), ip.parse().unwrap());
        e.status = 200;
        e
    }

    #[test]
    fn events_later_than_the_lateness_are_judged_at_the_watermark() {
        let mut r = Router::new(&DetectionConfig::default(), 2).unwrap();
        assert_eq!(r.route(&ev(100, "1.1.1.1")).time, EventTime::from_secs(100));
        // 3 s late: within the default 5 s, keeps its own time.
        assert_eq!(r.route(&ev(97, "1.1.1.2")).time, EventTime::from_secs(97));
        // 60 s late: clamped to the watermark (newest − 5 s).
        assert_eq!(r.route(&ev(40, "1.1.1.3")).time, EventTime::from_secs(95));
        assert_eq!(r.watermark(), EventTime::from_secs(95));
    }

    #[test]
    fn only_login_traffic_goes_to_a_target_shard() {
        let mut r = Router::new(&DetectionConfig::default(), 4).unwrap();
        let plain = ev(1, "1.1.1.1");
        assert_eq!(r.route(&plain).target_shard, None);
        let mut login = ev(2, "1.1.1.1");
        login.method = crate::event::Method::Post;
        login.path = Cow::Borrowed("/login");
        login.status = 401;
        let routed = r.route(&login);
        assert!(routed.class.contains(RequestClass::LOGIN));
        assert!(routed.target_shard.is_some());
    }

    #[test]
    fn population_updates_are_rare() {
        let mut r = Router::new(&DetectionConfig::default(), 1).unwrap();
        let mut updates = 0;
        for i in 0..60_000i64 {
            let mut e = ev(0, "1.1.1.1");
            e.ts = EventTime::from_millis(i * 20);
            e.ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + (i % 300) as u32));
            r.route(&e);
            updates += usize::from(r.take_population_update().is_some());
        }
        assert!(
            updates < 60,
            "{updates} broadcasts for 20 minutes of steady traffic"
        );
    }
}
