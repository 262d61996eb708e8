#include "convert_resize.hpp"

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

namespace fusionrt {
namespace {

// BT.601 limited range in OpenCV's fixed point (ITUR_BT_601_*), so conversion matches cv2.cvtColor exactly.
constexpr int kShift = 20;
constexpr int kCY = 1220542;
constexpr int kCUB = 2116026;
constexpr int kCUG = -409993;
constexpr int kCVG = -852492;
constexpr int kCVR = 1673527;

// Per output index: the first source index and its weights (summing to 1).
struct Taps {
    std::vector<int> first;
    std::vector<int> count;
    std::vector<float> weight;  // `stride` slots per output index
    int stride = 0;
};

Taps area_taps(int src, int dst) {
    Taps t;
    const double scale = double(src) / dst;
    t.stride = int(std::ceil(scale)) + 1;
    t.first.resize(dst);
    t.count.resize(dst);
    t.weight.assign(std::size_t(dst) * t.stride, 0.0f);
    for (int j = 0; j < dst; ++j) {
        const double a = j * scale, b = std::min((j + 1) * scale, double(src));
        const int k0 = int(std::floor(a)), k1 = std::min(int(std::ceil(b)), src);
        int n = 0;
        for (int k = k0; k < k1 && n < t.stride; ++k) {
            const double overlap = std::min(b, k + 1.0) - std::max(a, double(k));
            t.weight[std::size_t(j) * t.stride + n++] = float(overlap / (b - a));
        }
        t.first[j] = k0;
        t.count[j] = n;
    }
    return t;
}

Taps linear_taps(int src, int dst) {
    Taps t;
    t.stride = 2;
    t.first.resize(dst);
    t.count.assign(dst, 2);
    t.weight.resize(std::size_t(dst) * 2);
    const double scale = double(src) / dst;
    for (int j = 0; j < dst; ++j) {
        double f = (j + 0.5) * scale - 0.5;
        int k = int(std::floor(f));
        f -= k;
        if (k < 0) { k = 0; f = 0; }
        if (k >= src - 1) { k = src - 1; f = 0; }
        t.first[j] = k;
        t.count[j] = f > 0 ? 2 : 1;
        t.weight[std::size_t(j) * 2] = float(1 - f);
        t.weight[std::size_t(j) * 2 + 1] = float(f);
    }
    return t;
}

inline float clamp255(float v) { return std::min(std::max(v, 0.0f), 255.0f); }

inline float channel(int fixed) { return float(std::min(std::max(fixed >> kShift, 0), 255)); }

// Hot loops get an AVX2 clone on x86-64 (picked at load time); other targets use their baseline SIMD.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FUSIONRT_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FUSIONRT_SIMD_CLONES
#endif

// Planar float rows of one source row. Chroma formats store pixel pairs split: even x at x/2, odd x
// at w/2 + x/2, so the loops over pairs store contiguously and vectorize.
struct Planes {
    float* __restrict b;
    float* __restrict g;
    float* __restrict r;
};

// Pixels 2k and 2k+1 share chroma (u[k], v[k]); lumas y[2k], y[2k+1] at the given strides.
template <int YS, int CS>
FUSIONRT_SIMD_CLONES void yuv_pairs(const std::uint8_t* __restrict y, const std::uint8_t* __restrict u,
                                    const std::uint8_t* __restrict v, int pairs, Planes p) {
    constexpr int half = 1 << (kShift - 1);
    for (int k = 0; k < pairs; ++k) {
        const int du = int(u[CS * k]) - 128, dv = int(v[CS * k]) - 128;
        const int cb = kCUB * du + half, cg = kCUG * du + kCVG * dv + half, cr = kCVR * dv + half;
        const int y0 = std::max(int(y[YS * k]) - 16, 0) * kCY, y1 = std::max(int(y[YS * k + YS / 2]) - 16, 0) * kCY;
        p.b[k] = channel(y0 + cb); p.b[pairs + k] = channel(y1 + cb);
        p.g[k] = channel(y0 + cg); p.g[pairs + k] = channel(y1 + cg);
        p.r[k] = channel(y0 + cr); p.r[pairs + k] = channel(y1 + cr);
    }
}

FUSIONRT_SIMD_CLONES void split_channels(const std::uint8_t* __restrict q, int w, float* __restrict c0,
                                         float* __restrict c1, float* __restrict c2) {
    for (int x = 0; x < w; ++x) { c0[x] = q[3 * x]; c1[x] = q[3 * x + 1]; c2[x] = q[3 * x + 2]; }
}

FUSIONRT_SIMD_CLONES void accumulate(const float* __restrict src, float* __restrict acc, std::size_t n, float w) {
    for (std::size_t x = 0; x < n; ++x) acc[x] += w * src[x];
}

// Source row `row` -> planar float B, G, R, clamped to 0..255 as OpenCV's conversion does.
void convert_row(const Source& s, int row, Planes p) {
    const int w = s.width;
    const std::uint8_t* base = s.data;
    switch (s.format) {
    case PixelFormat::BGR: return split_channels(base + std::size_t(row) * w * 3, w, p.b, p.g, p.r);
    case PixelFormat::RGB: return split_channels(base + std::size_t(row) * w * 3, w, p.r, p.g, p.b);
    case PixelFormat::YUYV:
    case PixelFormat::UYVY: {
        const std::uint8_t* q = base + std::size_t(row) * w * 2;
        const int iy = s.format == PixelFormat::YUYV ? 0 : 1, iu = 1 - iy;
        return yuv_pairs<4, 4>(q + iy, q + iu, q + iu + 2, w / 2, p);
    }
    case PixelFormat::NV12: {
        const std::uint8_t* uv = base + std::size_t(s.height) * w + std::size_t(row / 2) * w;
        return yuv_pairs<2, 2>(base + std::size_t(row) * w, uv, uv + 1, w / 2, p);
    }
    case PixelFormat::I420: {
        const std::size_t plane = std::size_t(s.height) * w;
        const std::uint8_t* u = base + plane + std::size_t(row / 2) * (w / 2);
        return yuv_pairs<2, 1>(base + std::size_t(row) * w, u, u + plane / 4, w / 2, p);
    }
    }
}

// Output rows [row0, row1) of a (sub)image whose top-left pixel is `out` with row pitch `pitch`.
void run_band(const Source& s, const Taps& ty, const Taps& tx, std::uint8_t* out, std::size_t pitch, bool rgb,
              int row0, int row1) {
    const std::size_t w = std::size_t(s.width);
    const bool paired = s.format != PixelFormat::BGR && s.format != PixelFormat::RGB;
    std::vector<int> at(w);  // where source column x sits in a planar row
    for (std::size_t x = 0; x < w; ++x) at[x] = paired ? int((x & 1) * (w / 2) + x / 2) : int(x);
    std::vector<float> buf(w * 6);
    const Planes row_planes{buf.data(), buf.data() + w, buf.data() + 2 * w};
    float *ab = buf.data() + 3 * w, *ag = ab + w, *ar = ag + w;
    const int ib = rgb ? 2 : 0, ir = rgb ? 0 : 2;
    int cached = -1;
    for (int i = row0; i < row1; ++i) {
        std::fill(ab, ab + w * 3, 0.0f);
        for (int n = 0; n < ty.count[i]; ++n) {
            const int row = ty.first[i] + n;
            if (row != cached) convert_row(s, cached = row, row_planes);
            accumulate(buf.data(), ab, w * 3, ty.weight[std::size_t(i) * ty.stride + n]);
        }
        std::uint8_t* o = out + std::size_t(i) * pitch;
        for (int j = 0; j < int(tx.first.size()); ++j, o += 3) {
            const float* wx = &tx.weight[std::size_t(j) * tx.stride];
            const int* pos = &at[tx.first[j]];
            float sb = 0, sg = 0, sr = 0;
            for (int n = 0; n < tx.count[j]; ++n) {
                sb += wx[n] * ab[pos[n]]; sg += wx[n] * ag[pos[n]]; sr += wx[n] * ar[pos[n]];
            }
            o[ib] = std::uint8_t(clamp255(sb) + 0.5f);
            o[1] = std::uint8_t(clamp255(sg) + 0.5f);
            o[ir] = std::uint8_t(clamp255(sr) + 0.5f);
        }
    }
}

}  // namespace

std::size_t source_bytes(PixelFormat format, int height, int width) {
    const std::size_t pixels = std::size_t(height) * width;
    switch (format) {
    case PixelFormat::BGR:
    case PixelFormat::RGB: return pixels * 3;
    case PixelFormat::YUYV:
    case PixelFormat::UYVY: return pixels * 2;
    case PixelFormat::NV12:
    case PixelFormat::I420: return pixels * 3 / 2;
    }
    return 0;
}

void convert_resize(const Source& s, const Target& d, int threads) {
    int ih = d.height, iw = d.width, oy = 0, ox = 0;
    if (d.letterbox) {
        const double scale = std::min(double(d.height) / s.height, double(d.width) / s.width);
        ih = std::clamp(int(std::lround(s.height * scale)), 1, d.height);
        iw = std::clamp(int(std::lround(s.width * scale)), 1, d.width);
        oy = (d.height - ih) / 2;
        ox = (d.width - iw) / 2;
        std::fill(d.data, d.data + std::size_t(d.height) * d.width * 3, d.pad);
    }
    const bool shrink = s.height >= ih && s.width >= iw;
    const Taps ty = shrink ? area_taps(s.height, ih) : linear_taps(s.height, ih);
    const Taps tx = shrink ? area_taps(s.width, iw) : linear_taps(s.width, iw);
    const std::size_t pitch = std::size_t(d.width) * 3;
    std::uint8_t* out = d.data + std::size_t(oy) * pitch + std::size_t(ox) * 3;
    threads = std::clamp(threads, 1, ih);
    if (threads == 1) return run_band(s, ty, tx, out, pitch, d.rgb, 0, ih);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back(run_band, std::cref(s), std::cref(ty), std::cref(tx), out, pitch, d.rgb,
                          ih * t / threads, ih * (t + 1) / threads);
    for (auto& thread : pool) thread.join();
}

}  // namespace fusionrt
