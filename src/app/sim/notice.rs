//! A one-line message for the user, shown for a few seconds.

use bevy::prelude::*;

/// How long a notice stays on screen.
pub const NOTICE_SECONDS: f32 = 6.0;

/// A one-line message for the user (a file saved, something unavailable), shown for a few seconds.
#[derive(Resource, Debug, Clone, Default)]
pub struct Notice {
    pub text: String,
    /// Seconds left on screen.
    pub seconds_left: f32,
}

impl Notice {
    pub fn show(&mut self, text: impl Into<String>) {
        self.text = text.into();
        self.seconds_left = NOTICE_SECONDS;
        info!("{}", self.text);
    }
}

pub(super) fn count_down(mut notice: ResMut<Notice>, time: Res<Time>) {
    notice.seconds_left = (notice.seconds_left - time.delta_secs()).max(0.0);
}
