//! The box art `/appasset` serves: one placeholder PNG, drawn here.
//!
//! Moonlight clients (android and Artemis in particular) hand whatever
//! `/appasset` returns to their image cache as the app's box art, so the
//! answer for a listed app must be an image, not an XML error. This host
//! streams nothing and has no artwork of its own, so every listed app gets
//! the same host-made placeholder: a box-art-shaped ([`WIDTH`] × [`HEIGHT`],
//! the 3:4 portrait of a game case) dark card with the punktfunk mark, a
//! dot sending waves to both sides, "((•))". It is drawn procedurally (no
//! font, no asset file), encoded once on first use and kept for the life
//! of the process.

use std::sync::OnceLock;

/// Width of the placeholder, in pixels.
pub const WIDTH: u32 = 300;
/// Height of the placeholder, in pixels.
pub const HEIGHT: u32 = 400;
// Portrait, like a game case.
const _: () = assert!(HEIGHT > WIDTH);
/// The media type of [`placeholder_png`].
pub const CONTENT_TYPE: &str = "image/png";

/// Why the placeholder is unavailable (never expected: encoding into
/// memory has no I/O to fail).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot encode the placeholder box art: {0}")]
pub struct BoxArtError(String);

/// The placeholder box art as PNG bytes, encoded on the first call.
pub fn placeholder_png() -> Result<&'static [u8], BoxArtError> {
    static PNG: OnceLock<Result<Vec<u8>, BoxArtError>> = OnceLock::new();
    PNG.get_or_init(|| encode(&draw()))
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

/// An RGB colour.
type Rgb = [f32; 3];

const BACKGROUND_TOP: Rgb = [0x24 as f32, 0x29 as f32, 0x38 as f32];
const BACKGROUND_BOTTOM: Rgb = [0x11 as f32, 0x14 as f32, 0x1c as f32];
const FRAME: Rgb = [0x3a as f32, 0x41 as f32, 0x55 as f32];
const ACCENT: Rgb = [0xff as f32, 0x8a as f32, 0x2a as f32];

/// The picture, as 8-bit RGB rows, top to bottom.
fn draw() -> Vec<u8> {
    let (w, h) = (WIDTH as f32, HEIGHT as f32);
    // The mark sits a little above the middle, as a title would on a case.
    let (cx, cy) = (w / 2.0, h * 0.44);
    let dot = w * 0.06;
    let stroke = w * 0.022;
    // Waves: radius and how far each sweeps up and down (radians).
    let waves = [(w * 0.15, 0.80_f32), (w * 0.235, 0.72), (w * 0.32, 0.64)];
    // A thin frame inset from the edge, with rounded corners.
    let inset = w * 0.05;
    let corner = w * 0.06;
    let frame_half = w * 0.004;

    let mut pixels = Vec::with_capacity((WIDTH * HEIGHT * 3) as usize);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            // Sample at the pixel centre.
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let t = py / h;
            let mut colour = mix(BACKGROUND_TOP, BACKGROUND_BOTTOM, t);

            let frame =
                rounded_rect(px, py, inset, inset, w - inset, h - inset, corner).abs() - frame_half;
            colour = mix(colour, FRAME, coverage(frame));

            let (dx, dy) = (px - cx, py - cy);
            let mut mark = (dx * dx + dy * dy).sqrt() - dot;
            for (radius, sweep) in waves {
                mark = mark.min(arc(dx, dy, radius, sweep) - stroke);
            }
            colour = mix(colour, ACCENT, coverage(mark));

            pixels.extend(colour.map(|c| c.round().clamp(0.0, 255.0) as u8));
        }
    }
    pixels
}

/// How much of a pixel a shape covers, from the signed distance of the
/// pixel centre to the shape's edge (negative inside): a one-pixel ramp
/// for smooth edges.
fn coverage(distance: f32) -> f32 {
    (0.5 - distance).clamp(0.0, 1.0)
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [0, 1, 2].map(|i| a[i] + (b[i] - a[i]) * t)
}

/// Distance from (dx, dy), relative to the centre, to two arcs of `radius`
/// facing left and right, each spanning ±`sweep` around the horizontal,
/// with round ends.
fn arc(dx: f32, dy: f32, radius: f32, sweep: f32) -> f32 {
    let angle = dy.atan2(dx.abs());
    if angle.abs() <= sweep {
        ((dx * dx + dy * dy).sqrt() - radius).abs()
    } else {
        let end_x = radius * sweep.cos();
        let end_y = radius * sweep.sin() * angle.signum();
        let (ex, ey) = (dx.abs() - end_x, dy - end_y);
        (ex * ex + ey * ey).sqrt()
    }
}

/// Signed distance to the outline of a rectangle with rounded corners
/// (negative inside).
fn rounded_rect(px: f32, py: f32, x0: f32, y0: f32, x1: f32, y1: f32, r: f32) -> f32 {
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let (hw, hh) = ((x1 - x0) / 2.0 - r, (y1 - y0) / 2.0 - r);
    let qx = (px - cx).abs() - hw;
    let qy = (py - cy).abs() - hh;
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    outside + qx.max(qy).min(0.0) - r
}

fn encode(rgb: &[u8]) -> Result<Vec<u8>, BoxArtError> {
    let err = |e: png::EncodingError| BoxArtError(e.to_string());
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn the_placeholder_is_a_box_art_shaped_png_made_once() {
        let png = placeholder_png().unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(std::ptr::eq(png, placeholder_png().unwrap()), "cached");
        assert!(png.len() < 64 * 1024, "{} bytes", png.len());
        let (info, pixels) = decode(png);
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(pixels.len(), (WIDTH * HEIGHT * 3) as usize);
    }

    #[test]
    fn the_mark_is_drawn() {
        let (_, pixels) = decode(placeholder_png().unwrap());
        let at = |x: u32, y: u32| {
            let i = ((y * WIDTH + x) * 3) as usize;
            [pixels[i], pixels[i + 1], pixels[i + 2]]
        };
        let centre_y = (HEIGHT as f32 * 0.44) as u32;
        // The dot in the middle is the accent colour; the corner is the
        // dark background.
        assert_eq!(at(WIDTH / 2, centre_y), [0xff, 0x8a, 0x2a]);
        let corner = at(1, 1);
        assert!(corner.iter().all(|&c| c < 0x40), "{corner:?}");
        // The innermost wave crosses the horizontal on both sides.
        let wave = (WIDTH as f32 * 0.15) as u32;
        assert_eq!(at(WIDTH / 2 + wave, centre_y), [0xff, 0x8a, 0x2a]);
        assert_eq!(at(WIDTH / 2 - wave, centre_y), [0xff, 0x8a, 0x2a]);
        // Between the dot and the wave: background.
        let gap = at(WIDTH / 2 + wave / 2 + 4, centre_y);
        assert!(gap[0] < 0x40, "{gap:?}");
    }
}
