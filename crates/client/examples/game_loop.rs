//! A game loop on the Rust client, as a game embeds it (this crate alone,
//! no server code): connect, host or join a session, then every frame send
//! this aircraft's state to the other players and read what arrived, never
//! waiting on the network.
//!
//! ```text
//! flightsim-p2p serve                  # prints the QUIC address and the certificate's SHA-256
//! cargo run -p fsp2p-client --example game_loop -- 127.0.0.1:4433 SHA256      # hosts, prints the code
//! cargo run -p fsp2p-client --example game_loop -- 127.0.0.1:4433 SHA256 CODE # joins
//! ```

use std::time::Duration;

use fsp2p_client::protocol::{ServerMsg, ALL_PEERS};
use fsp2p_client::{Client, ClientConfig, Event, Trust};

/// Two seconds of flight at 60 frames a second.
const FRAMES: u32 = 120;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: game_loop QUIC_ADDR CERT_SHA256_HEX [CODE]";
    let server = args.next().ok_or(usage)?.parse()?;
    let hash: [u8; 32] = hex::decode(args.next().ok_or(usage)?)?
        .try_into()
        .map_err(|_| "the certificate hash is 32 bytes")?;
    let mut client =
        Client::connect(&ClientConfig::new(server, Trust::CertHash(hash)), None).await?;
    match args.next() {
        Some(code) => println!("joined {}", client.join_session(&code, None).await?.code),
        None => {
            let code = client.create_session(0, None).await?.code;
            println!("code {code}");
            // The lobby: take off once a wingman is there.
            let joined = |m: &ServerMsg| matches!(m, ServerMsg::PeerJoined(_)).then_some(());
            client.wait_for(joined).await?;
        }
    }
    let mut frame_clock = tokio::time::interval(Duration::from_secs_f64(1.0 / 60.0));
    let (mut position, mut heard) = ([0f32, 0.0, 1000.0], 0u32);
    for frame in 0..FRAMES {
        frame_clock.tick().await;
        // Simulate one frame, then tell everyone where this aircraft is.
        position[0] += 250.0 / 60.0;
        let mut state = frame.to_le_bytes().to_vec();
        state.extend(position.iter().flat_map(|v| v.to_le_bytes()));
        client.send_relay(ALL_PEERS, &state).await?;
        // Everything that arrived since the last frame, without waiting for more.
        while let Some(event) = client.next_event_within(Duration::ZERO).await {
            match event {
                Event::Relay { from, payload, .. } if payload.len() == 16 => {
                    heard += 1;
                    let x = f32::from_le_bytes(payload[4..8].try_into()?);
                    if heard == 1 {
                        println!("first state from peer {from}: x = {x}");
                    }
                }
                Event::Closed(why) => return Err(why.to_string().into()),
                _ => {}
            }
        }
    }
    println!("heard {heard} states in {FRAMES} frames");
    client.close().await;
    Ok(())
}
