// Drawn faces for the synthetic BP4D and DISFA writers: a parametric cartoon face whose 68 iBUG
// landmarks and drawn features come from one model, so that every benchmark AU moves something a
// CNN can see (brows, lids, cheeks, nose, lips, jaw) and the landmarks agree with the pixels.
// Subjects differ in skin tone, face width and position; AU occurrence is correlated through
// prototype expressions, as in real data (e.g. AU6 + AU12, AU1 + AU2, AU4 + AU7).
#pragma once

#include <opencv2/core.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <vector>

namespace facet::data::face {

// A seeded generator with its own uniform draw (std:: distributions differ between libraries; the
// written datasets must not).
class SynthRng {
 public:
  explicit SynthRng(uint64_t seed) : engine_(seed) {}
  double uniform(double lo = 0.0, double hi = 1.0) {
    return lo + (hi - lo) * static_cast<double>(engine_() >> 11) * 0x1.0p-53;
  }
  int64_t integer(int64_t lo, int64_t hi) {  // inclusive
    return lo + static_cast<int64_t>(engine_() % static_cast<uint64_t>(hi - lo + 1));
  }
  bool chance(double p) { return uniform() < p; }
  uint64_t next() { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

struct FaceIdentity {
  cv::Scalar skin, brow, lip, background;  // BGR
  double half_width = 0;                   // face half-width, pixels
  double cx = 0, cy = 0;                   // face centre, pixels
  double eye_spread = 1, mouth_width = 1;  // small shape differences
};
FaceIdentity random_identity(SynthRng& rng, int size);

// Prototype expressions; BP4D task T<k> elicits expression k (face.md §A.1 mapping).
enum class Expression { kNeutral = 0, kHappy, kSad, kSurprise, kEmbarrassment, kFear, kPain, kAnger, kDisgust };
inline constexpr int kExpressions = 9;

// Every AU draw_face can show.
inline const std::vector<int> kDrawableAus = {1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26};

// AU intensities 0..5 by AU number for one frame: the expression is shown with probability
// `show`, each of its AUs with its own probability at intensity 2..5; every AU in `coded` may also
// occur spontaneously (rarely), and with `traces` an absent AU sometimes shows at intensity 1.
std::map<int, int> sample_intensities(SynthRng& rng, Expression expression, const std::vector<int>& coded, double show,
                                      bool traces);

// Draws the face into `image` (BGR uint8, square) with AU activations = intensity / 5 and returns
// the 68 landmarks in iBUG order (x, y) in continuous pixel coordinates (pixel centres at +0.5).
std::vector<cv::Point2f> draw_face(cv::Mat& image, const FaceIdentity& id, const std::map<int, int>& intensities,
                                   SynthRng& rng);

}  // namespace facet::data::face
