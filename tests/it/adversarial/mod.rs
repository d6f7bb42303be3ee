//! The adversarial suite: Vigil attacked through its own ingest path, as the sender we watch
//! would, mostly through the real `vigil` binary. Each module asserts the safe outcome for one
//! class of attack (see the README's "Security model").

mod detection;
mod durability;
mod evasion;
mod hostile_json;
mod server;
mod sources;
mod time;
