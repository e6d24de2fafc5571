//! The throttle a chunk worker checks before it exports: the ReportDatabase's thresholds as
//! the controller hands them to the pod ([`Throttle::to_env`], [`Throttle::parse`]), and the
//! verdict on the load the worker read ([`Throttle::verdict`]).

use super::spec::ThrottleSpec;

/// Thresholds on the database's own load (see [`ThrottleSpec`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Throttle {
    /// Most sessions running a statement at once.
    pub max_active_sessions: Option<u32>,
    /// Most seconds a standby may lag.
    pub max_replay_lag_seconds: Option<u32>,
}

/// The load a worker read from the server.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Client sessions in state `active`, other than the reader's own.
    pub active_sessions: u64,
    /// A standby's replay lag in seconds; `None` on a primary (or before any replay).
    pub replay_lag_seconds: Option<f64>,
}

/// The longest text [`Throttle::parse`] reads.
const MAX_TEXT: usize = 200;

impl Throttle {
    /// The thresholds of a ReportDatabase's spec (`None` fields: no threshold).
    pub fn of(spec: &ThrottleSpec) -> Throttle {
        let positive = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
        Throttle {
            max_active_sessions: positive(spec.max_active_sessions),
            max_replay_lag_seconds: positive(spec.max_replay_lag_seconds),
        }
    }

    /// No threshold set.
    pub fn is_empty(&self) -> bool {
        self.max_active_sessions.is_none() && self.max_replay_lag_seconds.is_none()
    }

    /// The value of [`crate::stage_protocol::env::THROTTLE`]:
    /// `maxActiveSessions=N,maxReplayLagSeconds=S` (set ones only).
    pub fn to_env(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.max_active_sessions {
            parts.push(format!("maxActiveSessions={n}"));
        }
        if let Some(s) = self.max_replay_lag_seconds {
            parts.push(format!("maxReplayLagSeconds={s}"));
        }
        parts.join(",")
    }

    /// Reads what [`Throttle::to_env`] wrote; anything else is refused.
    pub fn parse(text: &str) -> Result<Throttle, String> {
        if text.len() > MAX_TEXT {
            return Err(format!("more than {MAX_TEXT} bytes"));
        }
        let mut throttle = Throttle::default();
        for item in text.split(',').filter(|s| !s.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not name=value"))?;
            let value: u32 = value
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{name}: {value:?} is not a positive integer"))?;
            let slot = match name {
                "maxActiveSessions" => &mut throttle.max_active_sessions,
                "maxReplayLagSeconds" => &mut throttle.max_replay_lag_seconds,
                other => return Err(format!("unknown threshold {other:?}")),
            };
            if slot.replace(value).is_some() {
                return Err(format!("{name} is given twice"));
            }
        }
        Ok(throttle)
    }

    /// Why `load` exceeds a threshold, or `None` when a chunk may start.
    pub fn verdict(&self, load: &Load) -> Option<String> {
        let mut over = Vec::new();
        if let Some(max) = self.max_active_sessions
            && load.active_sessions > u64::from(max)
        {
            over.push(format!(
                "{} active sessions, more than maxActiveSessions {max}",
                load.active_sessions
            ));
        }
        if let (Some(max), Some(lag)) = (self.max_replay_lag_seconds, load.replay_lag_seconds)
            && lag > f64::from(max)
        {
            over.push(format!(
                "the standby replays {lag:.0} s behind, more than maxReplayLagSeconds {max}"
            ));
        }
        (!over.is_empty()).then(|| format!("database busy: {}", over.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_form_round_trips_and_refuses_anything_else() {
        let t = Throttle {
            max_active_sessions: Some(4),
            max_replay_lag_seconds: Some(30),
        };
        assert_eq!(t.to_env(), "maxActiveSessions=4,maxReplayLagSeconds=30");
        assert_eq!(Throttle::parse(&t.to_env()), Ok(t));
        assert_eq!(Throttle::parse(""), Ok(Throttle::default()));
        for bad in [
            "maxActiveSessions",
            "maxActiveSessions=0",
            "maxActiveSessions=-1",
            "maxActiveSessions=4,maxActiveSessions=5",
            "cpu=3",
            &"maxActiveSessions=1,".repeat(50),
        ] {
            assert!(Throttle::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_chunk_waits_only_while_a_threshold_is_exceeded() {
        let t = Throttle {
            max_active_sessions: Some(4),
            max_replay_lag_seconds: Some(30),
        };
        let load = |active, lag| Load {
            active_sessions: active,
            replay_lag_seconds: lag,
        };
        assert_eq!(t.verdict(&load(4, None)), None);
        assert_eq!(t.verdict(&load(3, Some(30.0))), None);
        assert_eq!(
            t.verdict(&load(5, None)).as_deref(),
            Some("database busy: 5 active sessions, more than maxActiveSessions 4")
        );
        let both = t.verdict(&load(9, Some(95.4))).unwrap_or_default();
        assert!(
            both.contains("9 active sessions") && both.contains("95 s behind"),
            "{both}"
        );
        assert_eq!(Throttle::default().verdict(&load(1000, Some(1e6))), None);
    }
}
