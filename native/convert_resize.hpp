// One pass from a camera frame (packed or planar YUV, or BGR/RGB) to a uint8 HxWx3 image at model size.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fusionrt {

enum class PixelFormat { BGR, RGB, YUYV, UYVY, NV12, I420 };

struct Source {
    const std::uint8_t* data;
    int height;
    int width;
    PixelFormat format;
};

struct Target {
    std::uint8_t* data;  // out_height x out_width x 3, contiguous
    int height;
    int width;
    bool rgb;        // channel order of the output
    bool letterbox;  // keep the aspect ratio, pad the rest with `pad`
    std::uint8_t pad;
};

// Bytes a source of this format and size occupies (what the caller's array must hold).
std::size_t source_bytes(PixelFormat format, int height, int width);

// Converts and resizes: area-averaging when both axes shrink, else bilinear (OpenCV's INTER_AREA /
// INTER_LINEAR choice in runtime/preprocess.py), on `threads` row bands. Touches no Python state.
void convert_resize(const Source& src, const Target& dst, int threads);

}  // namespace fusionrt
