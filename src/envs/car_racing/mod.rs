//! STUB: replaced by the real implementation.
use super::{ActionError, ActionSpace, Env, EnvKind, Frame, Step};

pub const FPS: u32 = 50;
pub const ACTION_SPACE: ActionSpace = ActionSpace { names: &["steer", "gas", "brake"], low: &[-1.0, 0.0, 0.0], high: &[1.0, 1.0, 1.0] };

pub struct CarRacing;

impl CarRacing {
    pub fn new(_seed: u64) -> Self {
        CarRacing
    }
}

impl Env for CarRacing {
    fn kind(&self) -> EnvKind {
        todo!()
    }
    fn reset(&mut self, _seed: u64) -> Frame {
        todo!()
    }
    fn step(&mut self, _action: &[f32]) -> Result<Step, ActionError> {
        todo!()
    }
    fn observation(&self) -> Frame {
        todo!()
    }
    fn render(&self, _width: u32, _height: u32) -> Frame {
        todo!()
    }
    fn elapsed_steps(&self) -> u32 {
        todo!()
    }
    fn state_json(&self) -> serde_json::Value {
        todo!()
    }
}
